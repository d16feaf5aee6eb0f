//! A live creditor for the lookup tests (issue 21): `getDataForSSN` over
//! HTTPS (a server certificate of the suite's [`TestCa`], optionally
//! requiring Samtykke's client certificate), with a behaviour the test sets
//! and changes: answer (after a delay), answer a status, answer garbage,
//! send the headers and then hang, hang, or answer `429` with
//! `Retry-After`. It records every call (the `customerID` and `X-Trace-ID`
//! headers) so that a test can await calls instead of sleeping.
//!
//! A creditor that refuses connections is [`refusing_endpoint`]: a loopback
//! port that nothing listens on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::test_ca::{serve_tls, TestCa};

/// What the creditor does with the next calls.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Answers with its data for the person after `delay`.
    Answer { delay: Duration },
    /// Answers `status` with the protocol's error body.
    Status(u16),
    /// Answers `429` with `Retry-After: seconds` (if given).
    TooManyRequests { retry_after: Option<u64> },
    /// `200` with a body that is not a valid answer.
    Garbage,
    /// `200` and its headers, then never the body.
    HangAfterHeaders,
    /// Never answers.
    Hang,
}

impl Behaviour {
    pub fn answer() -> Self {
        Self::Answer {
            delay: Duration::ZERO,
        }
    }
}

/// One call the creditor received.
#[derive(Debug, Clone)]
pub struct SeenCall {
    pub financial_institution_id: String,
    pub customer_id: Option<String>,
    pub trace_id: Option<String>,
}

struct PeerState {
    fi: String,
    behaviour: Mutex<Behaviour>,
    /// Loans (wire objects with `accountID`) by customer.
    loans: Mutex<HashMap<String, Vec<Value>>>,
    calls: Mutex<Vec<SeenCall>>,
    called: Notify,
}

/// A running creditor; it runs until the test's runtime ends.
#[derive(Clone)]
pub struct CreditorPeer {
    pub addr: SocketAddr,
    state: Arc<PeerState>,
}

impl CreditorPeer {
    /// A creditor for `fi` on a fresh loopback port, presenting a server
    /// certificate of `ca`; with `require_client_cert`, only clients with a
    /// certificate of `ca` get through the handshake.
    pub async fn start(
        ca: &TestCa,
        fi: &str,
        behaviour: Behaviour,
        require_client_cert: bool,
    ) -> Self {
        let state = Arc::new(PeerState {
            fi: fi.to_owned(),
            behaviour: Mutex::new(behaviour),
            loans: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
        });
        let router = Router::new()
            .route(
                "/debt-information/v1/loans/{fi}/customer",
                get(get_data_for_ssn),
            )
            .with_state(state.clone());
        let server = ca.server_cert(&format!("creditor-{fi}"));
        let addr = serve_tls(router, ca.server_config(&server, require_client_cert)).await;
        Self { addr, state }
    }

    /// Its endpoint base, as registered.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Sets the loans it answers for `nin`.
    pub fn set_loans(&self, nin: &str, loans: Vec<Value>) {
        self.state
            .loans
            .lock()
            .unwrap()
            .insert(nin.to_owned(), loans);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<SeenCall> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Waits until it has received at least `n` calls (bounded, so that a
    /// broken test fails instead of hanging).
    pub async fn await_calls(&self, n: usize) -> Vec<SeenCall> {
        let wait = async {
            loop {
                let notified = self.state.called.notified();
                let calls = self.calls();
                if calls.len() >= n {
                    return calls;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("the creditor got {} calls, not {n}", self.calls().len()))
    }
}

/// An `https://` endpoint on a loopback port that nothing listens on: its
/// connections are refused.
pub fn refusing_endpoint() -> String {
    let addr = crate::helpers::free_loopback_addr();
    format!("https://127.0.0.1:{}/", addr.port())
}

fn error_body(status: StatusCode, headers: &HeaderMap, what: &str) -> Response {
    let trace = headers
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = json!({
        "error": what,
        "error_description": what,
        "timestamp": "2026-12-06T10:00:00Z",
        "trace_id": trace,
    });
    (status, axum::Json(body)).into_response()
}

async fn get_data_for_ssn(
    State(state): State<Arc<PeerState>>,
    Path(fi): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let customer = header("customerid");
    state.calls.lock().unwrap().push(SeenCall {
        financial_institution_id: fi.clone(),
        customer_id: customer.clone(),
        trace_id: header("x-trace-id"),
    });
    state.called.notify_waiters();
    let behaviour = state.behaviour.lock().unwrap().clone();
    match behaviour {
        Behaviour::Answer { delay } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if fi != state.fi {
                return error_body(StatusCode::NOT_FOUND, &headers, "unknown institution");
            }
            let Some(customer) = customer else {
                return error_body(StatusCode::BAD_REQUEST, &headers, "customerID missing");
            };
            let loans = state
                .loans
                .lock()
                .unwrap()
                .get(&customer)
                .cloned()
                .unwrap_or_default();
            axum::Json(json!({
                "customerID": customer,
                "financialInstitutionID": state.fi,
                "loans": loans,
            }))
            .into_response()
        }
        Behaviour::Status(code) => error_body(
            StatusCode::from_u16(code).unwrap(),
            &headers,
            "server error",
        ),
        Behaviour::TooManyRequests { retry_after } => {
            let mut response =
                error_body(StatusCode::TOO_MANY_REQUESTS, &headers, "too many requests");
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
            }
            response
        }
        Behaviour::Garbage => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"customerID": 12, "loans": "#,
        )
            .into_response(),
        Behaviour::HangAfterHeaders => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from_stream(futures::stream::pending::<
                Result<Vec<u8>, std::io::Error>,
            >()))
            .unwrap(),
        Behaviour::Hang => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIN: &str = "01818510078";

    #[tokio::test]
    async fn the_peer_answers_as_programmed_and_records_each_call() {
        let ca = TestCa::new();
        let peer = CreditorPeer::start(&ca, "923456783", Behaviour::answer(), false).await;
        peer.set_loans(NIN, vec![json!({"type": "chargeCard"})]);
        let client = ca.client(None);
        let url = format!(
            "{}debt-information/v1/loans/923456783/customer",
            peer.endpoint()
        );
        let get = || {
            client
                .get(&url)
                .header("customerID", NIN)
                .header("X-Trace-ID", "t-1")
                .send()
        };
        let answer: Value = get().await.unwrap().json().await.unwrap();
        assert_eq!(answer["customerID"], NIN);
        assert_eq!(answer["financialInstitutionID"], "923456783");
        assert_eq!(answer["loans"][0]["type"], "chargeCard");

        peer.set(Behaviour::Status(503));
        let failed = get().await.unwrap();
        assert_eq!(failed.status(), 503);
        assert_eq!(failed.json::<Value>().await.unwrap()["trace_id"], "t-1");

        peer.set(Behaviour::TooManyRequests {
            retry_after: Some(2),
        });
        let throttled = get().await.unwrap();
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()["retry-after"], "2");

        peer.set(Behaviour::Garbage);
        let garbage = get().await.unwrap();
        assert!(garbage.json::<Value>().await.is_err());

        peer.set(Behaviour::HangAfterHeaders);
        let headers_only = get().await.unwrap();
        assert_eq!(headers_only.status(), 200);
        let body = tokio::time::timeout(Duration::from_millis(200), headers_only.bytes()).await;
        assert!(body.is_err(), "the body never comes");

        peer.set(Behaviour::Hang);
        let hanging = tokio::time::timeout(Duration::from_millis(200), get()).await;
        assert!(hanging.is_err(), "no headers either");

        let calls = peer.await_calls(6).await;
        assert!(calls
            .iter()
            .all(|c| c.financial_institution_id == "923456783"
                && c.customer_id.as_deref() == Some(NIN)
                && c.trace_id.as_deref() == Some("t-1")));
        assert!(client.get(refusing_endpoint()).send().await.is_err());
    }
}
