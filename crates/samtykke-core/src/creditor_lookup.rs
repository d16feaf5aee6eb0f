//! What one debt lookup serves, from what each creditor did (issue 21).
//!
//! The lookup path asks the person's creditors live (`getDataForSSN`) and
//! hands each one's [`CallOutcome`] here with the creditor's stored data;
//! [`compose`] decides, by rule and with no I/O:
//!
//! * **Answered**: the creditor's fresh loans are served (an empty answer
//!   means no debt there).
//! * **Silent** (timeout, refused connection, `5xx`, another status, a
//!   malformed answer, its circuit open, `429`, or its concurrency limit
//!   reached): its stored loans are served if they were delivered less than
//!   `fallback_max_age` ago; otherwise one `{"creditorName": …, "loan":
//!   null}` stands for it and it counts as missing. A `fallback_max_age` of
//!   zero never serves stored data for a silent creditor.
//! * **Not asked** (stored data of a creditor that is not registered as a
//!   live creditor, or is disabled): its stored loans are served as they
//!   are, as before live creditors existed (an imported registry).
//!
//! `numberOfCreditorsAnswered` counts the creditors whose data was served
//! (fresh or stored), `numberOfcreditorsMissing` the others. The
//! [`CreditorUsage`] report says, per creditor, whether it was asked, and
//! whether its data was served fresh, from stored data, or not at all (and
//! why); it goes into the usage log with the lookup.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::debt::Loan;

/// Why a creditor asked live gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditorFailure {
    /// No complete answer within its timeout (or the lookup's deadline).
    Timeout,
    /// The connection (or TLS handshake) failed.
    Unreachable,
    /// A `5xx` status.
    ServerError,
    /// Another unexpected status (`400`, `401`, `403`, `404`, …).
    Status,
    /// `200`, but the body is not a valid answer for this person.
    Malformed,
    /// `429 Too Many Requests`: backing off.
    Throttled,
    /// Its circuit breaker is open: it was not called.
    CircuitOpen,
    /// As many calls to it as its `max_concurrent` were in flight: it was
    /// not called.
    Busy,
}

impl CreditorFailure {
    pub const ALL: [Self; 8] = [
        Self::Timeout,
        Self::Unreachable,
        Self::ServerError,
        Self::Status,
        Self::Malformed,
        Self::Throttled,
        Self::CircuitOpen,
        Self::Busy,
    ];

    /// The name in the usage log and the metrics' `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::ServerError => "server_error",
            Self::Status => "status",
            Self::Malformed => "malformed",
            Self::Throttled => "throttled",
            Self::CircuitOpen => "circuit_open",
            Self::Busy => "busy",
        }
    }

    /// Whether the creditor was actually called (and so whether its
    /// breaker hears of it).
    pub fn was_called(self) -> bool {
        !matches!(self, Self::CircuitOpen | Self::Busy)
    }
}

impl fmt::Display for CreditorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What asking one creditor live gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// A valid answer: the person's loans there (possibly none).
    Answered(Vec<Loan>),
    Failed(CreditorFailure),
}

/// A creditor's stored data for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLoans {
    /// When the creditor delivered it (its last `getalldata`, push or
    /// import).
    pub stored_at: OffsetDateTime,
    pub loans: Vec<Loan>,
}

/// One creditor of a lookup: a live creditor that was asked, or one that
/// only has stored data for the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditorInput {
    /// Its `financialInstitutionID`.
    pub id: String,
    pub name: String,
    /// None: not asked (no live creditor); its stored data is served.
    pub asked: Option<CallOutcome>,
    /// None: no stored data for the person there.
    pub stored: Option<StoredLoans>,
}

/// Where a creditor's data in an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    /// Its live answer.
    Answered,
    /// Its stored data.
    Stored,
    /// Nothing: a `null` loan stands for it.
    Missing,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Stored => "stored",
            Self::Missing => "missing",
        }
    }
}

/// One creditor's line in the usage log of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditorUsage {
    /// Its `financialInstitutionID`.
    pub id: String,
    pub name: String,
    /// Whether it was asked live (false also when its breaker or its
    /// concurrency limit kept it from being called: see `failure`).
    pub asked: bool,
    pub served: Served,
    /// Why it gave no live answer, if it was meant to be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<CreditorFailure>,
}

impl CreditorUsage {
    /// The report as the usage log keeps it (a JSON array).
    pub fn to_json(report: &[CreditorUsage]) -> String {
        serde_json::to_string(report).unwrap_or_else(|_| "[]".to_owned())
    }

    /// The inverse of [`CreditorUsage::to_json`].
    pub fn from_json(json: &str) -> Result<Vec<CreditorUsage>, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// One item of `debt_information.loans`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedLoan {
    pub creditor_name: String,
    /// None: the creditor is missing.
    pub loan: Option<Loan>,
}

/// What a lookup serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedDebt {
    /// By creditor name (then id), each creditor's loans in their order.
    pub loans: Vec<ServedLoan>,
    /// `numberOfCreditorsAnswered`: creditors whose data was served.
    pub answered: usize,
    /// `numberOfcreditorsMissing`: creditors reported with a `null` loan.
    pub missing: usize,
    /// Per creditor, in the order of `loans`.
    pub report: Vec<CreditorUsage>,
}

/// Whether stored data delivered at `stored_at` may stand in for a silent
/// creditor at `now`: it is younger than `max_age` (which is positive).
pub fn stored_is_fresh(stored_at: OffsetDateTime, now: OffsetDateTime, max_age: Duration) -> bool {
    max_age.is_positive() && now - stored_at < max_age
}

/// Composes a lookup at `now` from its creditors (see the module docs).
/// A creditor that was not asked and has no stored data has nothing to
/// say and is left out.
pub fn compose(
    mut creditors: Vec<CreditorInput>,
    now: OffsetDateTime,
    fallback_max_age: Duration,
) -> ComposedDebt {
    creditors.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let mut out = ComposedDebt {
        loans: Vec::new(),
        answered: 0,
        missing: 0,
        report: Vec::with_capacity(creditors.len()),
    };
    for c in creditors {
        let (asked, served, failure, loans) = match (c.asked, c.stored) {
            (None, None) => continue,
            (None, Some(stored)) => (false, Served::Stored, None, stored.loans),
            (Some(CallOutcome::Answered(loans)), _) => (true, Served::Answered, None, loans),
            (Some(CallOutcome::Failed(why)), Some(stored))
                if stored_is_fresh(stored.stored_at, now, fallback_max_age) =>
            {
                (why.was_called(), Served::Stored, Some(why), stored.loans)
            }
            (Some(CallOutcome::Failed(why)), _) => {
                (why.was_called(), Served::Missing, Some(why), Vec::new())
            }
        };
        if served == Served::Missing {
            out.missing += 1;
            out.loans.push(ServedLoan {
                creditor_name: c.name.clone(),
                loan: None,
            });
        } else {
            out.answered += 1;
            out.loans.extend(loans.into_iter().map(|loan| ServedLoan {
                creditor_name: c.name.clone(),
                loan: Some(loan),
            }));
        }
        out.report.push(CreditorUsage {
            id: c.id,
            name: c.name,
            asked,
            served,
            failure,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debt::{parse_delivery, SANDBOX_DELIVERY};
    use crate::domain::NinPolicy;

    fn loans(n: usize) -> Vec<Loan> {
        let delivery = parse_delivery(SANDBOX_DELIVERY, NinPolicy::AllowSynthetic).unwrap();
        delivery
            .entries
            .into_iter()
            .map(|e| e.loan)
            .cycle()
            .take(n)
            .collect()
    }

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
    const MAX_AGE: Duration = Duration::hours(36);

    fn stored(age: Duration, n: usize) -> Option<StoredLoans> {
        Some(StoredLoans {
            stored_at: NOW - age,
            loans: loans(n),
        })
    }

    fn creditor(
        id: &str,
        name: &str,
        asked: Option<CallOutcome>,
        stored: Option<StoredLoans>,
    ) -> CreditorInput {
        CreditorInput {
            id: id.into(),
            name: name.into(),
            asked,
            stored,
        }
    }

    fn failed(why: CreditorFailure) -> Option<CallOutcome> {
        Some(CallOutcome::Failed(why))
    }

    fn served_names(d: &ComposedDebt) -> Vec<(&str, bool)> {
        d.loans
            .iter()
            .map(|l| (l.creditor_name.as_str(), l.loan.is_some()))
            .collect()
    }

    #[test]
    fn answered_creditors_serve_their_fresh_loans_over_the_stored_ones() {
        let fresh = loans(3);
        let d = compose(
            vec![
                creditor(
                    "2",
                    "B",
                    Some(CallOutcome::Answered(fresh[..1].to_vec())),
                    stored(Duration::hours(1), 2),
                ),
                creditor("1", "A", Some(CallOutcome::Answered(fresh.clone())), None),
            ],
            NOW,
            MAX_AGE,
        );
        assert_eq!(
            served_names(&d),
            [("A", true), ("A", true), ("A", true), ("B", true)]
        );
        assert_eq!(d.loans[0].loan.as_ref(), Some(&fresh[0]));
        assert_eq!((d.answered, d.missing), (2, 0));
        assert!(d
            .report
            .iter()
            .all(|r| r.asked && r.served == Served::Answered && r.failure.is_none()));
    }

    #[test]
    fn an_empty_answer_counts_as_answered_with_no_loans() {
        let d = compose(
            vec![creditor(
                "1",
                "A",
                Some(CallOutcome::Answered(vec![])),
                stored(Duration::hours(1), 2),
            )],
            NOW,
            MAX_AGE,
        );
        assert!(d.loans.is_empty());
        assert_eq!((d.answered, d.missing), (1, 0));
    }

    #[test]
    fn a_silent_creditor_with_young_stored_data_is_served_from_it() {
        for why in CreditorFailure::ALL {
            let d = compose(
                vec![creditor(
                    "1",
                    "A",
                    failed(why),
                    stored(MAX_AGE - Duration::SECOND, 2),
                )],
                NOW,
                MAX_AGE,
            );
            assert_eq!(served_names(&d), [("A", true), ("A", true)], "{why}");
            assert_eq!((d.answered, d.missing), (1, 0));
            assert_eq!(
                d.report,
                [CreditorUsage {
                    id: "1".into(),
                    name: "A".into(),
                    asked: why.was_called(),
                    served: Served::Stored,
                    failure: Some(why),
                }]
            );
        }
    }

    #[test]
    fn a_silent_creditor_with_old_or_no_stored_data_is_one_null_loan_and_missing() {
        let d = compose(
            vec![
                creditor(
                    "1",
                    "A",
                    failed(CreditorFailure::Timeout),
                    stored(MAX_AGE, 3),
                ),
                creditor("2", "B", failed(CreditorFailure::ServerError), None),
                creditor("3", "C", Some(CallOutcome::Answered(loans(1))), None),
            ],
            NOW,
            MAX_AGE,
        );
        assert_eq!(served_names(&d), [("A", false), ("B", false), ("C", true)]);
        assert_eq!((d.answered, d.missing), (1, 2));
        assert_eq!(d.report[0].served, Served::Missing);
        assert_eq!(d.report[0].failure, Some(CreditorFailure::Timeout));
        assert!(d.report[0].asked);
    }

    #[test]
    fn a_zero_max_age_never_serves_stored_data_for_a_silent_creditor() {
        let d = compose(
            vec![creditor(
                "1",
                "A",
                failed(CreditorFailure::Malformed),
                stored(Duration::ZERO, 1),
            )],
            NOW,
            Duration::ZERO,
        );
        assert_eq!(served_names(&d), [("A", false)]);
        assert_eq!((d.answered, d.missing), (0, 1));
        assert!(!stored_is_fresh(NOW, NOW, Duration::ZERO));
        assert!(stored_is_fresh(NOW, NOW, Duration::SECOND));
    }

    #[test]
    fn stored_data_of_a_creditor_not_asked_is_served_whatever_its_age() {
        let d = compose(
            vec![
                creditor("1", "A", None, stored(Duration::days(400), 2)),
                creditor("2", "B", None, None),
            ],
            NOW,
            MAX_AGE,
        );
        assert_eq!(served_names(&d), [("A", true), ("A", true)]);
        assert_eq!((d.answered, d.missing), (1, 0));
        assert_eq!(
            d.report,
            [CreditorUsage {
                id: "1".into(),
                name: "A".into(),
                asked: false,
                served: Served::Stored,
                failure: None,
            }]
        );
    }

    #[test]
    fn a_creditor_kept_from_being_called_is_not_reported_as_asked() {
        let d = compose(
            vec![
                creditor("1", "A", failed(CreditorFailure::CircuitOpen), None),
                creditor(
                    "2",
                    "B",
                    failed(CreditorFailure::Busy),
                    stored(Duration::HOUR, 1),
                ),
            ],
            NOW,
            MAX_AGE,
        );
        assert_eq!(
            d.report
                .iter()
                .map(|r| (r.asked, r.served))
                .collect::<Vec<_>>(),
            [(false, Served::Missing), (false, Served::Stored)]
        );
    }

    #[test]
    fn creditors_are_ordered_by_name_then_id() {
        let d = compose(
            vec![
                creditor("9", "B", None, stored(Duration::HOUR, 1)),
                creditor("2", "A", None, stored(Duration::HOUR, 1)),
                creditor("1", "B", failed(CreditorFailure::Timeout), None),
            ],
            NOW,
            MAX_AGE,
        );
        let ids: Vec<&str> = d.report.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["2", "1", "9"]);
    }

    #[test]
    fn the_report_survives_its_json_form() {
        let report = vec![
            CreditorUsage {
                id: "923456783".into(),
                name: "Nordlys Bank ASA".into(),
                asked: true,
                served: Served::Stored,
                failure: Some(CreditorFailure::Timeout),
            },
            CreditorUsage {
                id: "5560000001".into(),
                name: "Svensk".into(),
                asked: true,
                served: Served::Answered,
                failure: None,
            },
        ];
        let json = CreditorUsage::to_json(&report);
        assert_eq!(
            json,
            r#"[{"id":"923456783","name":"Nordlys Bank ASA","asked":true,"served":"stored","failure":"timeout"},{"id":"5560000001","name":"Svensk","asked":true,"served":"answered"}]"#
        );
        assert_eq!(CreditorUsage::from_json(&json).unwrap(), report);
        assert_eq!(CreditorUsage::to_json(&[]), "[]");
    }
}
