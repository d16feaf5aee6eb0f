//! The live creditors of a debt lookup (issue 21): which creditors are
//! asked, the calls, and the composition of the answer
//! ([`samtykke_core::creditor_lookup::compose`]).

use std::collections::BTreeMap;

use samtykke_core::creditor_lookup::{compose, ComposedDebt, CreditorInput, StoredLoans};
use samtykke_core::domain::Nin;
use samtykke_core::store::StoreError;
use time::OffsetDateTime;

use crate::AppState;

/// Default of `serve --creditor-fallback-max-age`: 36 hours.
pub const DEFAULT_FALLBACK_MAX_AGE: time::Duration = time::Duration::hours(36);

/// How lookups treat the creditors.
#[derive(Debug, Clone)]
pub struct CreditorSettings {
    /// Stored data younger than this stands in for a silent creditor; zero
    /// never.
    pub fallback_max_age: time::Duration,
    /// The longest a lookup waits for the creditors; None: the largest
    /// timeout of the creditors asked plus [`DEADLINE_MARGIN`].
    pub deadline: Option<std::time::Duration>,
}

/// The default deadline's margin over the largest creditor timeout.
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);

impl Default for CreditorSettings {
    fn default() -> Self {
        Self {
            fallback_max_age: DEFAULT_FALLBACK_MAX_AGE,
            deadline: None,
        }
    }
}

/// The lookups' side of the creditors, one per server process.
#[derive(Default)]
pub(crate) struct CreditorFanout {
    settings: CreditorSettings,
}

impl CreditorFanout {
    pub(crate) fn new(settings: CreditorSettings) -> Self {
        Self { settings }
    }

    /// The debt of `nin` as a lookup at `now` serves it.
    pub(crate) async fn look_up(
        &self,
        state: &AppState,
        nin: &Nin,
        _trace: &str,
        now: OffsetDateTime,
    ) -> Result<ComposedDebt, StoreError> {
        let mut by_creditor: BTreeMap<String, CreditorInput> = BTreeMap::new();
        for entry in state.store.debt_of(nin).await? {
            let input = by_creditor
                .entry(entry.creditor_org.as_str().to_owned())
                .or_insert_with(|| CreditorInput {
                    id: entry.creditor_org.as_str().to_owned(),
                    name: entry.creditor_name.clone(),
                    asked: None,
                    stored: Some(StoredLoans {
                        stored_at: now,
                        loans: Vec::new(),
                    }),
                });
            if let Some(stored) = input.stored.as_mut() {
                stored.loans.push(entry.loan);
            }
        }
        Ok(compose(
            by_creditor.into_values().collect(),
            now,
            self.settings.fallback_max_age,
        ))
    }
}
