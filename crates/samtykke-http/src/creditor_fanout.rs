//! The live creditors of a debt lookup (issue 21): which creditors are
//! asked, the calls with their breakers and concurrency limits, the overall
//! deadline, and the composition of the answer
//! ([`samtykke_core::creditor_lookup::compose`]).
//!
//! **Who is asked.** Every enabled registered creditor that holds the
//! person according to the stored data (its last `getalldata`, push or
//! import has loans of the person), and every enabled creditor marked
//! `always_ask`. The person's number is never sent to any other creditor:
//! a `getDataForSSN` call tells the creditor that this person is applying
//! for credit somewhere, which is itself personal data that a creditor
//! without a customer relationship has no business receiving (GDPR data
//! minimisation); `always_ask` is for creditors that deliver no
//! `getalldata` and so can never appear in the stored data.
//!
//! **The calls** run in parallel, each as a task of its own, each bounded by
//! its creditor's timeout (the client enforces it, body included). The
//! lookup waits for them until one overall deadline (`serve
//! --creditor-deadline-ms`, default the largest timeout asked plus
//! [`DEADLINE_MARGIN`]); a call still running then counts as a timeout for
//! this lookup, and its task ends within its own timeout and still informs
//! the breaker. A creditor with `max_concurrent` calls in flight is not
//! called (`busy`): its lookup falls back at once.
//!
//! **Breakers** are per creditor and per server process
//! ([`samtykke_core::creditor_breaker`]): nothing about them is shared
//! through the database, so two processes may judge one creditor apart for
//! up to a cool-down. Their changes are logged and exported as
//! `samtykke_creditor_breaker_state`.
//!
//! **Trace ids.** Every call carries the lookup's trace id as `X-Trace-ID`
//! (the caller's `X-Trace-ID`, already restricted to 128 printable ASCII
//! characters, or the request id), and every log line about a call names it
//! and the creditor, never the person's number or loan data.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use samtykke_core::creditor::{Creditor, StoredCreditorDebt};
use samtykke_core::creditor_breaker::{
    Admission, Breaker, BreakerPolicy, BreakerState, CallResult, Transition,
};
use samtykke_core::creditor_lookup::{
    compose, CallOutcome, ComposedDebt, CreditorFailure, CreditorInput, StoredLoans,
};
use samtykke_core::domain::Nin;
use samtykke_core::store::{Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::creditors::{CreditorCallError, CreditorClient};
use crate::AppState;

/// Default of `serve --creditor-fallback-max-age`: 36 hours.
pub const DEFAULT_FALLBACK_MAX_AGE: time::Duration = time::Duration::hours(36);

/// The default deadline's margin over the largest creditor timeout.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// How long a process uses the creditor registry it read (changes by
/// `samtykke creditor …` reach every running server within this time).
pub const REGISTRY_TTL: Duration = Duration::from_secs(1);

/// How lookups treat the creditors.
#[derive(Debug, Clone)]
pub struct LookupSettings {
    /// Stored data younger than this stands in for a silent creditor; zero
    /// never.
    pub fallback_max_age: time::Duration,
    /// The longest a lookup waits for the creditors; None: the largest
    /// timeout of the creditors asked plus [`DEADLINE_MARGIN`].
    pub deadline: Option<Duration>,
    /// The breakers' settings.
    pub breaker: BreakerPolicy,
}

impl Default for LookupSettings {
    fn default() -> Self {
        Self {
            fallback_max_age: DEFAULT_FALLBACK_MAX_AGE,
            deadline: None,
            breaker: BreakerPolicy::default(),
        }
    }
}

/// One creditor's state in this process.
struct Live {
    breaker: Mutex<Breaker>,
    /// Its `max_concurrent` and the semaphore that enforces it.
    limit: Mutex<(Option<u32>, Option<Arc<Semaphore>>)>,
}

impl Live {
    /// A permit for one call, or None if `max_concurrent` calls are in
    /// flight; `Ok(None)` when the creditor has no limit.
    fn permit(&self, max: Option<u32>) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let semaphore = {
            let mut limit = lock(&self.limit);
            if limit.0 != max {
                *limit = (
                    max,
                    max.map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
                );
            }
            limit.1.clone()
        };
        match semaphore {
            None => Ok(None),
            Some(s) => s.try_acquire_owned().map(Some).map_err(|_| ()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lookups' side of the creditors, one per server process.
#[derive(Default)]
pub(crate) struct CreditorFanout {
    settings: LookupSettings,
    registry: Mutex<Option<(Instant, Arc<Vec<Creditor>>)>>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    pub(crate) metrics: CreditorMetrics,
}

impl CreditorFanout {
    pub(crate) fn new(settings: LookupSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// The registered creditors, read at most every [`REGISTRY_TTL`].
    async fn registry(&self, store: &dyn Store) -> Result<Arc<Vec<Creditor>>, StoreError> {
        if let Some((read_at, creditors)) = lock(&self.registry).as_ref() {
            if read_at.elapsed() < REGISTRY_TTL {
                return Ok(creditors.clone());
            }
        }
        let read_at = Instant::now();
        let creditors: Arc<Vec<Creditor>> = Arc::new(
            store
                .list_creditors()
                .await?
                .into_iter()
                .map(|r| r.creditor)
                .collect(),
        );
        *lock(&self.registry) = Some((read_at, creditors.clone()));
        Ok(creditors)
    }

    fn live(&self, creditor: &Creditor) -> Arc<Live> {
        let mut live = lock(&self.live);
        live.entry(creditor.id.as_str().to_owned())
            .or_insert_with(|| {
                self.metrics
                    .breaker_changed(creditor.id.as_str(), BreakerState::Closed);
                Arc::new(Live {
                    breaker: Mutex::new(Breaker::new(self.settings.breaker)),
                    limit: Mutex::new((None, None)),
                })
            })
            .clone()
    }

    /// The debt of `nin` as a lookup at `now` with trace id `trace` serves
    /// it.
    pub(crate) async fn look_up(
        self: &Arc<Self>,
        state: &AppState,
        nin: &Nin,
        trace: &str,
        now: OffsetDateTime,
    ) -> Result<ComposedDebt, StoreError> {
        let store = state.store.as_ref();
        let (registry, stored) = tokio::try_join!(self.registry(store), store.stored_debt_of(nin))?;
        let mut stored: BTreeMap<String, StoredCreditorDebt> = stored
            .into_iter()
            .map(|s| (s.id.as_str().to_owned(), s))
            .collect();
        let asked: Vec<&Creditor> = registry
            .iter()
            .filter(|c| c.enabled && (c.always_ask || stored.contains_key(c.id.as_str())))
            .collect();
        let outcomes = match (asked.is_empty(), state.creditor_client()) {
            (true, _) => Vec::new(),
            (false, Some(client)) => self.ask(client, &asked, nin, trace).await,
            // No client (a server built without one): nobody can be asked.
            (false, None) => vec![CallOutcome::Failed(CreditorFailure::Unreachable); asked.len()],
        };
        let mut inputs = Vec::with_capacity(asked.len() + stored.len());
        for (creditor, outcome) in asked.into_iter().zip(outcomes) {
            inputs.push(CreditorInput {
                id: creditor.id.as_str().to_owned(),
                name: creditor.name.clone(),
                asked: Some(outcome),
                stored: stored.remove(creditor.id.as_str()).map(stored_loans),
            });
        }
        // Stored data of creditors that are not live (not registered, or
        // disabled): served as stored.
        inputs.extend(stored.into_values().map(|s| CreditorInput {
            id: s.id.as_str().to_owned(),
            name: s.name.clone(),
            asked: None,
            stored: Some(stored_loans(s)),
        }));
        let debt = compose(inputs, now, self.settings.fallback_max_age);
        for c in &debt.report {
            self.metrics.served(&c.id, c.served.as_str());
        }
        Ok(debt)
    }

    /// Asks `creditors` in parallel; their outcomes in the same order, by
    /// the deadline at the latest.
    async fn ask(
        self: &Arc<Self>,
        client: &CreditorClient,
        creditors: &[&Creditor],
        nin: &Nin,
        trace: &str,
    ) -> Vec<CallOutcome> {
        let longest = creditors
            .iter()
            .map(|c| c.timeout)
            .max()
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now()
            + self.settings.deadline.unwrap_or(longest + DEADLINE_MARGIN);
        let calls: Vec<_> = creditors
            .iter()
            .map(|c| self.call(client, c, nin, trace))
            .collect();
        let mut outcomes = Vec::with_capacity(calls.len());
        for (creditor, call) in creditors.iter().zip(calls) {
            outcomes.push(match call {
                Err(outcome) => outcome,
                Ok(task) => match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => CallOutcome::Failed(CreditorFailure::Unreachable),
                    Err(_) => {
                        tracing::info!(
                            trace_id = trace,
                            creditor = creditor.id.as_str(),
                            "creditor not answered by the lookup's deadline"
                        );
                        CallOutcome::Failed(CreditorFailure::Timeout)
                    }
                },
            });
        }
        outcomes
    }

    /// Starts one call, unless the breaker or the concurrency limit keeps
    /// it from being made (then its outcome at once).
    fn call(
        self: &Arc<Self>,
        client: &CreditorClient,
        creditor: &Creditor,
        nin: &Nin,
        trace: &str,
    ) -> Result<tokio::task::JoinHandle<CallOutcome>, CallOutcome> {
        let fi = creditor.id.as_str();
        let live = self.live(creditor);
        let (admission, transition) = lock(&live.breaker).admit(Instant::now());
        self.transition(fi, trace, transition);
        if !admission.calls() {
            self.metrics
                .outcome(fi, CreditorFailure::CircuitOpen.as_str());
            return Err(CallOutcome::Failed(CreditorFailure::CircuitOpen));
        }
        if admission == Admission::Trial {
            self.metrics.breaker_changed(fi, BreakerState::HalfOpen);
            tracing::info!(
                trace_id = trace,
                creditor = fi,
                "creditor breaker half-open: trial call"
            );
        }
        let Ok(permit) = live.permit(creditor.max_concurrent) else {
            self.metrics.outcome(fi, CreditorFailure::Busy.as_str());
            return Err(CallOutcome::Failed(CreditorFailure::Busy));
        };
        let (this, client, creditor, nin, trace) = (
            self.clone(),
            client.clone(),
            creditor.clone(),
            nin.clone(),
            trace.to_owned(),
        );
        Ok(tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let result = client.get_data_for_ssn(&creditor, &nin, &trace).await;
            let elapsed = started.elapsed();
            let fi = creditor.id.as_str();
            let (outcome, call_result, label) = match result {
                Ok(answer) => (
                    CallOutcome::Answered(answer.loans.into_iter().map(|(_, loan)| loan).collect()),
                    CallResult::Success,
                    "answered",
                ),
                Err(e) => {
                    let failure = failure_of(&e);
                    tracing::info!(
                        trace_id = trace.as_str(),
                        creditor = fi,
                        error = %e,
                        elapsed_ms = elapsed.as_millis() as u64,
                        "creditor call failed"
                    );
                    let result = match e {
                        CreditorCallError::TooManyRequests { retry_after } => {
                            CallResult::Throttled(retry_after)
                        }
                        _ => CallResult::Failure,
                    };
                    (CallOutcome::Failed(failure), result, failure.as_str())
                }
            };
            this.metrics.call(fi, label, elapsed);
            let transition = lock(&live.breaker).record(admission, call_result, Instant::now());
            this.transition(fi, &trace, transition);
            tracing::debug!(
                trace_id = trace.as_str(),
                creditor = fi,
                outcome = label,
                elapsed_ms = elapsed.as_millis() as u64,
                "creditor called"
            );
            outcome
        }))
    }

    /// Logs and exports a breaker's change of state.
    fn transition(&self, fi: &str, trace: &str, transition: Option<Transition>) {
        if let Some(t) = transition {
            self.metrics.breaker_changed(fi, t.to);
            tracing::warn!(
                trace_id = trace,
                creditor = fi,
                from = t.from.as_str(),
                to = t.to.as_str(),
                "creditor breaker changed state"
            );
        }
    }
}

fn stored_loans(s: StoredCreditorDebt) -> StoredLoans {
    StoredLoans {
        // Data of unknown age never stands in for a silent creditor.
        stored_at: s.stored_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
        loans: s.entries.into_iter().map(|e| e.loan).collect(),
    }
}

fn failure_of(e: &CreditorCallError) -> CreditorFailure {
    match e {
        CreditorCallError::TooManyRequests { .. } => CreditorFailure::Throttled,
        CreditorCallError::ServerError(_) => CreditorFailure::ServerError,
        CreditorCallError::Status(_) => CreditorFailure::Status,
        CreditorCallError::Malformed(_) => CreditorFailure::Malformed,
        CreditorCallError::Timeout(_) => CreditorFailure::Timeout,
        CreditorCallError::Connect(_) => CreditorFailure::Unreachable,
    }
}

/// Latency buckets of creditor calls, in seconds.
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0,
];

/// `samtykke_creditor_*` of the lookup path, labelled by the creditor's
/// `financialInstitutionID` (`creditor`): bounded by the registry.
pub(crate) struct CreditorMetrics {
    duration: HistogramVec,
    calls: IntCounterVec,
    served: IntCounterVec,
    breaker: IntGaugeVec,
}

#[allow(clippy::expect_used)]
fn fixed<T>(metric: prometheus::Result<T>) -> T {
    metric.expect("metric names and labels are valid constants")
}

impl Default for CreditorMetrics {
    fn default() -> Self {
        Self {
            duration: fixed(HistogramVec::new(
                HistogramOpts::new(
                    "samtykke_creditor_request_duration_seconds",
                    "Time of getDataForSSN calls made during lookups, by creditor and outcome.",
                )
                .buckets(CALL_BUCKETS.to_vec()),
                &["creditor", "outcome"],
            )),
            calls: fixed(IntCounterVec::new(
                Opts::new(
                    "samtykke_creditor_calls_total",
                    "getDataForSSN outcomes during lookups, by creditor and outcome (answered, timeout, unreachable, server_error, status, malformed, throttled; circuit_open and busy: not called).",
                ),
                &["creditor", "outcome"],
            )),
            served: fixed(IntCounterVec::new(
                Opts::new(
                    "samtykke_creditor_lookups_total",
                    "Creditors in composed lookups, by creditor and what was served (answered, stored, missing).",
                ),
                &["creditor", "served"],
            )),
            breaker: fixed(IntGaugeVec::new(
                Opts::new(
                    "samtykke_creditor_breaker_state",
                    "This process's circuit breaker of the creditor: 0 closed, 1 open, 2 half-open.",
                ),
                &["creditor"],
            )),
        }
    }
}

impl CreditorMetrics {
    fn call(&self, fi: &str, outcome: &str, elapsed: Duration) {
        self.outcome(fi, outcome);
        self.duration
            .with_label_values(&[fi, outcome])
            .observe(elapsed.as_secs_f64());
    }

    fn outcome(&self, fi: &str, outcome: &str) {
        self.calls.with_label_values(&[fi, outcome]).inc();
    }

    fn served(&self, fi: &str, served: &str) {
        self.served.with_label_values(&[fi, served]).inc();
    }

    fn breaker_changed(&self, fi: &str, state: BreakerState) {
        self.breaker.with_label_values(&[fi]).set(state.gauge());
    }

    /// The Prometheus text exposition of these metrics (families without
    /// series left out).
    pub(crate) fn render(&self) -> Vec<u8> {
        let mut families = self.duration.collect();
        families.extend(self.calls.collect());
        families.extend(self.served.collect());
        families.extend(self.breaker.collect());
        families.retain(|family| !family.get_metric().is_empty());
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "could not render the creditor metrics");
        }
        out
    }
}
