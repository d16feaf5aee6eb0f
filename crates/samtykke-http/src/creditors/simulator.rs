//! A simulated creditor: `getalldata` and `getDataForSSN` as the protocol
//! documents them, served from a delivery (or generated customers), with
//! configurable latency, jitter, failures, hanging and garbage. Used by
//! `samtykke creditor simulate`, by sandbox mode (its built-in creditors run
//! as simulated live creditors on loopback) and by the tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use rand::Rng;
use samtykke_core::creditor::{FinancialInstitutionId, DEFAULT_PAGE_SIZE};
use samtykke_core::debt::{default_creditor_name, Delivery, Loan, ProviderId};
use samtykke_core::domain::{Nin, NinPolicy, OrgNumber};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;

use super::client::{CUSTOMER_ID_HEADER, TRACE_ID_HEADER};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Before every answer.
    pub latency: Duration,
    /// Up to this much more, at random.
    pub jitter: Duration,
    /// Share of calls answered 500.
    pub fail_rate: f64,
    /// Send a 200's headers and then nothing.
    pub hang: bool,
    /// Answer 200 with a body that is not JSON.
    pub garbage: bool,
    /// Customers per `getalldata` page.
    pub page_size: u32,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            fail_rate: 0.0,
            hang: false,
            garbage: false,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// One customer's loans as served: (accountID, loan).
type Loans = Vec<(String, Loan)>;

struct Institution {
    id: FinancialInstitutionId,
    name: Option<String>,
    /// In delivery order.
    customers: Vec<(Nin, Loans)>,
    by_nin: HashMap<String, usize>,
    /// Generated customers instead of `customers`.
    generated: Option<u64>,
}

/// What the simulator serves.
pub struct SimulatorData {
    provider: ProviderId,
    institutions: Vec<Institution>,
}

impl SimulatorData {
    /// The customers of `delivery`: of the institution `only` (default: the
    /// delivery's providerID, else every institution in it).
    pub fn from_delivery(
        delivery: &Delivery,
        only: Option<&FinancialInstitutionId>,
    ) -> Result<Self, String> {
        let provider_fi = FinancialInstitutionId::parse(delivery.provider_id.as_str()).ok();
        let wanted: Vec<FinancialInstitutionId> = match only {
            Some(fi) => vec![fi.clone()],
            None => match provider_fi {
                Some(fi) if delivery.financial_institutions.contains(&fi) => vec![fi],
                _ => delivery.financial_institutions.clone(),
            },
        };
        let mut institutions = Vec::new();
        for fi in wanted {
            if !delivery.financial_institutions.contains(&fi) {
                return Err(format!("the file has no customers of {fi}"));
            }
            let mut inst = Institution {
                id: fi.clone(),
                name: None,
                customers: Vec::new(),
                by_nin: HashMap::new(),
                generated: None,
            };
            for (nin, customer_fi) in &delivery.customers {
                if customer_fi == &fi {
                    inst.by_nin
                        .insert(nin.as_str().to_owned(), inst.customers.len());
                    inst.customers.push((nin.clone(), Vec::new()));
                }
            }
            for entry in delivery.entries.iter().filter(|e| e.creditor_org == fi) {
                if entry.creditor_name != default_creditor_name(&fi) {
                    inst.name = Some(entry.creditor_name.clone());
                }
                if let Some(&i) = inst.by_nin.get(entry.nin.as_str()) {
                    inst.customers[i]
                        .1
                        .push((entry.account_id.clone(), entry.loan.clone()));
                }
            }
            institutions.push(inst);
        }
        Ok(Self {
            provider: delivery.provider_id.clone(),
            institutions,
        })
    }

    /// `count` generated customers of `fi` (synthetic test people, one
    /// charge card each), made as they are served: for benchmarks of
    /// millions of customers. `getDataForSSN` answers them with no loans.
    pub fn generated(fi: FinancialInstitutionId, count: u64) -> Self {
        let provider = ProviderId::parse(fi.as_str())
            .unwrap_or_else(|_| ProviderId::from(GENERATED_PROVIDER.clone()));
        Self {
            provider,
            institutions: vec![Institution {
                id: fi,
                name: Some("Generated Creditor".to_owned()),
                customers: Vec::new(),
                by_nin: HashMap::new(),
                generated: Some(count),
            }],
        }
    }

    pub fn institutions(&self) -> Vec<FinancialInstitutionId> {
        self.institutions.iter().map(|i| i.id.clone()).collect()
    }

    /// The name the delivery gave the institution, if any.
    pub fn name_of(&self, fi: &FinancialInstitutionId) -> Option<String> {
        self.institution(fi).and_then(|i| i.name.clone())
    }

    pub fn customer_count(&self) -> u64 {
        self.institutions
            .iter()
            .map(|i| i.generated.unwrap_or(i.customers.len() as u64))
            .sum()
    }

    fn institution(&self, fi: &FinancialInstitutionId) -> Option<&Institution> {
        self.institutions.iter().find(|i| &i.id == fi)
    }
}

/// The providerID of generated data of a foreign institution.
static GENERATED_PROVIDER: std::sync::LazyLock<OrgNumber> = std::sync::LazyLock::new(|| {
    OrgNumber::parse("985399077").unwrap_or_else(|_| unreachable!("a valid number"))
});

const K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn control(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// The synthetic test numbers (month + 80) in a fixed order: day 01–28,
/// month 81–92, year 00–99 (1900s), individual 000–499, skipping those
/// without valid control digits.
pub fn synthetic_numbers() -> impl Iterator<Item = String> {
    (0u32..100).flat_map(|yy| {
        (81u32..=92).flat_map(move |mm| {
            (1u32..=28).flat_map(move |dd| {
                (0u32..500).filter_map(move |ind| {
                    let mut d = [
                        dd / 10,
                        dd % 10,
                        mm / 10,
                        mm % 10,
                        yy / 10,
                        yy % 10,
                        ind / 100,
                        ind / 10 % 10,
                        ind % 10,
                        0,
                        0,
                    ];
                    d[9] = control(&d[..9], &K1)?;
                    d[10] = control(&d[..10], &K2)?;
                    Some(d.iter().map(|x| char::from(b'0' + *x as u8)).collect())
                })
            })
        })
    })
}

/// A generated customer's charge card.
fn generated_loan(i: u64) -> Value {
    json!({
        "type": "chargeCard",
        "accountID": format!("G-{i}"),
        "timestamp": "2026-11-01T08:00:00Z",
        "coBorrower": 0,
        "interestBearingBalance": (i % 1000) * 100,
        "nonInterestBearingBalance": 12_500
    })
}

/// The simulated creditor.
#[derive(Clone)]
pub struct Simulator {
    data: Arc<SimulatorData>,
    options: SimulatorOptions,
    per_institution: Arc<HashMap<FinancialInstitutionId, SimulatorOptions>>,
}

impl Simulator {
    pub fn new(data: Arc<SimulatorData>, options: SimulatorOptions) -> Self {
        Self {
            data,
            options,
            per_institution: Arc::new(HashMap::new()),
        }
    }

    /// Other options for one institution (sandbox mode's slow creditor).
    pub fn with_options_for(
        mut self,
        fi: FinancialInstitutionId,
        options: SimulatorOptions,
    ) -> Self {
        Arc::make_mut(&mut self.per_institution).insert(fi, options);
        self
    }

    fn options(&self, fi: &FinancialInstitutionId) -> &SimulatorOptions {
        self.per_institution.get(fi).unwrap_or(&self.options)
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/debt-information/v1/loans/{fi}", get(all_data))
            .route("/debt-information/v1/loans/{fi}/customer", get(customer))
            .with_state(self)
    }

    /// Serves on `listener` (HTTPS with `tls`) until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        match tls {
            None => {
                tokio::select! {
                    served = axum::serve(listener, router) => served,
                    () = shutdown => Ok(()),
                }
            }
            Some(config) => {
                tokio::select! {
                    () = serve_tls(listener, router, config) => Ok(()),
                    () = shutdown => Ok(()),
                }
            }
        }
    }
}

/// Accepts TLS connections forever, HTTP/1.1 on each.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut router = router.clone();
                    async move { tower::Service::call(&mut router, req).await }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// A rustls server configuration from PEM files; with `client_ca`, client
/// certificates issued by it are required.
pub fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                roots
                    .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn error_body(status: StatusCode, error: &str, description: &str, headers: &HeaderMap) -> Response {
    let trace_id = headers
        .get(TRACE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let timestamp = samtykke_core::Clock::now(&samtykke_core::SystemClock)
        .format(&Rfc3339)
        .unwrap_or_default();
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "timestamp": timestamp,
            "trace_id": trace_id,
        })),
    )
        .into_response()
}

/// The common behaviour before an answer: latency, failures, hang, garbage.
/// Some(response) when the behaviour decides the answer.
async fn behave(options: &SimulatorOptions, headers: &HeaderMap) -> Option<Response> {
    let extra = if options.jitter.is_zero() {
        Duration::ZERO
    } else {
        let jitter_us = u64::try_from(options.jitter.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::thread_rng().gen_range(0..=jitter_us))
    };
    let wait = options.latency + extra;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    if options.fail_rate > 0.0 && rand::thread_rng().gen_bool(options.fail_rate.min(1.0)) {
        return Some(error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "simulated failure",
            headers,
        ));
    }
    if options.hang {
        let never = futures_util::stream::pending::<Result<Bytes, Infallible>>();
        return Some(json_response(Body::from_stream(never)));
    }
    if options.garbage {
        return Some(json_response(Body::from("<html>simulated garbage</html>")));
    }
    None
}

fn json_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_institution(headers: &HeaderMap) -> Response {
    error_body(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "financialInstitutionID is not valid",
        headers,
    )
}

fn unknown_institution(headers: &HeaderMap) -> Response {
    error_body(
        StatusCode::NOT_FOUND,
        "not_found",
        "unknown financialInstitutionID",
        headers,
    )
}

fn customer_json(fi: &FinancialInstitutionId, nin: &str, loans: &[(String, Loan)]) -> Value {
    let loans: Vec<Value> = loans
        .iter()
        .map(|(account, loan)| {
            let mut object = Map::new();
            object.insert("type".to_owned(), Value::from(loan.type_name()));
            object.insert("accountID".to_owned(), Value::from(account.as_str()));
            if let Value::Object(fields) = loan.to_json() {
                for (k, v) in fields {
                    object.entry(k).or_insert(v);
                }
            }
            Value::Object(object)
        })
        .collect();
    json!({
        "customerID": nin,
        "financialInstitutionID": fi.as_str(),
        "loans": loans,
    })
}

/// `getDataForSSN`.
async fn customer(
    State(sim): State<Simulator>,
    UrlPath(fi): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(fi) = FinancialInstitutionId::parse(&fi) else {
        return bad_institution(&headers);
    };
    if let Some(response) = behave(sim.options(&fi), &headers).await {
        return response;
    }
    let Some(inst) = sim.data.institution(&fi) else {
        return unknown_institution(&headers);
    };
    let nin = headers
        .get(CUSTOMER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Nin::parse(v, NinPolicy::AllowSynthetic).ok());
    let Some(nin) = nin else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the customerID header is missing or not a valid national identity number",
            &headers,
        );
    };
    // No debt here: 200 with an empty list, never 404.
    let loans = inst
        .by_nin
        .get(nin.as_str())
        .map(|&i| inst.customers[i].1.as_slice())
        .unwrap_or_default();
    json_response(Body::from(
        customer_json(&fi, nin.as_str(), loans).to_string(),
    ))
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<u64>,
}

/// Where a streamed page is.
struct PageStream {
    sim: Simulator,
    fi: FinancialInstitutionId,
    first: u64,
    at: u64,
    end: u64,
    head: Option<String>,
    done: bool,
    numbers: Option<Box<dyn Iterator<Item = String> + Send>>,
}

/// Customers per body chunk.
const CHUNK_CUSTOMERS: u64 = 200;

/// `getalldata`: page `page` (0-based) of the institution's customers,
/// streamed in chunks.
async fn all_data(
    State(sim): State<Simulator>,
    UrlPath(fi): UrlPath<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(fi) = FinancialInstitutionId::parse(&fi) else {
        return bad_institution(&headers);
    };
    let options = sim.options(&fi).clone();
    if let Some(response) = behave(&options, &headers).await {
        return response;
    }
    let Some(inst) = sim.data.institution(&fi) else {
        return unknown_institution(&headers);
    };
    let total = inst.generated.unwrap_or(inst.customers.len() as u64);
    let page_size = u64::from(options.page_size.max(1));
    let page = query.page.unwrap_or(0);
    let start = page.saturating_mul(page_size).min(total);
    let end = start.saturating_add(page_size).min(total);
    let head = format!(
        "{{\"providerID\": \"9908:{}\", \"customers\": [",
        sim.data.provider
    );
    let numbers: Option<Box<dyn Iterator<Item = String> + Send>> = inst.generated.map(|_| {
        Box::new(synthetic_numbers().skip(usize::try_from(start).unwrap_or(usize::MAX)))
            as Box<dyn Iterator<Item = String> + Send>
    });
    let state = PageStream {
        sim: sim.clone(),
        fi,
        first: start,
        at: start,
        end,
        head: Some(head),
        done: false,
        numbers,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(head) = st.head.take() {
            return Some((Ok::<_, Infallible>(Bytes::from(head)), st));
        }
        if st.done {
            return None;
        }
        if st.at >= st.end {
            st.done = true;
            return Some((Ok(Bytes::from_static(b"]}")), st));
        }
        let until = (st.at + CHUNK_CUSTOMERS).min(st.end);
        let mut chunk = String::new();
        if let Some(inst) = st.sim.data.institution(&st.fi) {
            for i in st.at..until {
                if i > st.first {
                    chunk.push(',');
                }
                let customer = match st.numbers.as_mut() {
                    Some(numbers) => json!({
                        "customerID": numbers.next().unwrap_or_default(),
                        "financialInstitutionID": st.fi.as_str(),
                        "loans": [generated_loan(i)],
                    }),
                    None => {
                        let index = usize::try_from(i).unwrap_or(usize::MAX);
                        match inst.customers.get(index) {
                            Some((nin, loans)) => customer_json(&st.fi, nin.as_str(), loans),
                            None => Value::Null,
                        }
                    }
                };
                chunk.push_str(&customer.to_string());
            }
        }
        st.at = until;
        Some((Ok(Bytes::from(chunk)), st))
    });
    json_response(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_numbers_are_valid_and_distinct() {
        let numbers: Vec<String> = synthetic_numbers().take(5000).collect();
        for n in &numbers {
            assert!(Nin::parse(n, NinPolicy::AllowSynthetic).is_ok(), "{n}");
        }
        let mut sorted = numbers.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), numbers.len());
    }
}
