//! The daily `getalldata` in `serve`: at a configured time (default 05:30
//! UTC), each enabled creditor's sync starts at its own point within the
//! jitter window after it (the same point in every process: a hash of the
//! creditor and the day). Every process may run the scheduler; the store's
//! claim lets exactly one of them sync a creditor on a given day. A failed
//! sync is retried by the claiming process with back-off (1, 5, 15, 60
//! minutes); the outcome goes to the log, the store (`creditor list`) and
//! `/metrics`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use samtykke_core::creditor::{Creditor, FinancialInstitutionId};
use samtykke_core::store::Store;
use samtykke_core::Clock;
use time::{OffsetDateTime, Time};

use super::client::CreditorClient;
use super::sync::{run_sync, SyncSettings};

/// Waits between the retries of a failed daily sync.
pub const RETRY_BACKOFF: [Duration; 4] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
];

/// When the daily `getalldata` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailySchedule {
    /// Hour and minute, UTC.
    pub at: (u8, u8),
    pub jitter: Duration,
}

impl DailySchedule {
    /// When `fi`'s sync is due on the day of `now` (UTC).
    pub fn due(&self, fi: &FinancialInstitutionId, day: time::Date) -> OffsetDateTime {
        let start = Time::from_hms(self.at.0, self.at.1, 0).unwrap_or(Time::MIDNIGHT);
        let slot = day.with_time(start).assume_utc();
        let jitter = self.jitter.as_secs();
        if jitter == 0 {
            return slot;
        }
        // The same offset in every process (DefaultHasher::new has fixed keys).
        let mut h = DefaultHasher::new();
        (fi.as_str(), day.to_julian_day()).hash(&mut h);
        slot + time::Duration::seconds(i64::try_from(h.finish() % (jitter + 1)).unwrap_or(0))
    }
}

/// One pass: claims the daily sync of every enabled creditor that is due at
/// `now` and not yet claimed today, anywhere; returns the claimed ones (the
/// caller syncs them).
pub async fn claim_due(
    store: &dyn Store,
    schedule: &DailySchedule,
    now: OffsetDateTime,
) -> Vec<Creditor> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let day = now.date();
    let creditors = match store.list_creditors().await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(error = %e, "daily getalldata: cannot list the creditors");
            return Vec::new();
        }
    };
    let mut claimed = Vec::new();
    for record in creditors {
        let creditor = record.creditor;
        let done_today = record.sync.claimed_day.is_some_and(|d| d >= day);
        if !creditor.enabled || done_today || now < schedule.due(&creditor.id, day) {
            continue;
        }
        match store.claim_daily_sync(&creditor.id, day).await {
            Ok(true) => claimed.push(creditor),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(creditor = %creditor.id, error = %e, "daily getalldata: cannot claim")
            }
        }
    }
    claimed
}

/// Runs the scheduler until the task is aborted.
pub fn spawn(
    store: Arc<dyn Store>,
    client: CreditorClient,
    clock: Arc<dyn Clock>,
    schedule: DailySchedule,
    settings: SyncSettings,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for creditor in claim_due(store.as_ref(), &schedule, clock.now()).await {
                let (store, client, clock, settings) = (
                    store.clone(),
                    client.clone(),
                    clock.clone(),
                    settings.clone(),
                );
                tokio::spawn(async move {
                    sync_with_retries(&store, &client, clock.as_ref(), &creditor, &settings).await;
                });
            }
            // Often enough to start each sync within half a minute of its time.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
}

/// A claimed daily sync: tried, then retried after each back-off step.
pub async fn sync_with_retries(
    store: &Arc<dyn Store>,
    client: &CreditorClient,
    clock: &dyn Clock,
    creditor: &Creditor,
    settings: &SyncSettings,
) {
    for wait in std::iter::once(None).chain(RETRY_BACKOFF.iter().map(Some)) {
        if let Some(wait) = wait {
            tracing::info!(creditor = %creditor.id, retry_in_s = wait.as_secs(), "daily getalldata: retrying later");
            tokio::time::sleep(*wait).await;
        }
        let (_, result) = run_sync(store, client, creditor, settings, clock.now()).await;
        if result.is_ok() {
            return;
        }
    }
    tracing::error!(creditor = %creditor.id, "daily getalldata failed after every retry; the stored data is kept");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_creditor_has_its_own_point_in_the_window_the_same_everywhere() {
        let schedule = DailySchedule {
            at: (5, 30),
            jitter: Duration::from_secs(600),
        };
        let day = time::macros::date!(2026 - 12 - 06);
        let a = FinancialInstitutionId::parse("923456783").unwrap();
        let b = FinancialInstitutionId::parse("934567897").unwrap();
        let start = time::macros::datetime!(2026-12-06 05:30 UTC);
        for fi in [&a, &b] {
            let due = schedule.due(fi, day);
            assert!(due >= start && due <= start + time::Duration::seconds(600));
            assert_eq!(due, schedule.due(fi, day));
        }
        let none = DailySchedule {
            at: (5, 30),
            jitter: Duration::ZERO,
        };
        assert_eq!(none.due(&a, day), start);
    }
}
