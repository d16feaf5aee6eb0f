//! The background janitor: marks consents whose time is up as expired (with
//! their `SAMTYKKE_ARKIVERT` events), removes events older than 7 days, and
//! removes expired login flows, sessions, codes and access tokens.
//! Every step is a conditional, batched write, so several server processes
//! on one PostgreSQL may run it at the same time.

use std::sync::Arc;
use std::time::Duration;

use samtykke_core::consent::EVENT_RETENTION;
use samtykke_core::store::{Store, StoreError};
use samtykke_core::Clock;

/// Consents expired per transaction.
const EXPIRE_BATCH: u32 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JanitorReport {
    pub consents_expired: u64,
    pub events_purged: u64,
    /// Finished or abandoned login flows, login sessions, codes and long
    /// expired access tokens.
    pub flow_state_purged: u64,
}

/// One pass: expire in batches until none is left, then purge old events.
pub async fn run_once(store: &dyn Store, clock: &dyn Clock) -> Result<JanitorReport, StoreError> {
    let now = clock.now();
    let mut report = JanitorReport::default();
    loop {
        let expired = store.expire_consents(now, EXPIRE_BATCH).await?;
        report.consents_expired += expired;
        if expired < u64::from(EXPIRE_BATCH) {
            break;
        }
    }
    report.events_purged = store.purge_consent_events(now - EVENT_RETENTION).await?;
    report.flow_state_purged = store.purge_expired_flow_state(now).await?;
    Ok(report)
}

/// Runs [`run_once`] every `interval` until the returned handle is dropped
/// or aborted.
pub fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match run_once(store.as_ref(), clock.as_ref()).await {
                Ok(r) if r != JanitorReport::default() => {
                    tracing::info!(
                        consents_expired = r.consents_expired,
                        events_purged = r.events_purged,
                        flow_state_purged = r.flow_state_purged,
                        "janitor pass"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "janitor pass failed; will retry"),
            }
        }
    })
}
