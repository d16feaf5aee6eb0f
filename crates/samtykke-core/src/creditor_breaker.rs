//! The circuit breaker of one live creditor (issue 21): a pure state
//! machine, driven by the lookup path with the time of each event.
//!
//! * **Closed**: every lookup calls the creditor. `failure_threshold`
//!   consecutive failures open the breaker; a success resets the count.
//! * **Open** until a time: the creditor is not called; its lookups go
//!   straight to the fallback (stored data or a `null` loan). The time is
//!   the cool-down after the last failure, or the creditor's own
//!   `Retry-After` when it answered `429` (capped at `max_back_off`).
//! * **Half-open** once that time has passed: exactly one lookup makes a
//!   trial call while the others fall back. Its success closes the breaker;
//!   its failure opens it for another cool-down. A trial whose outcome is
//!   never recorded (its lookup was abandoned) counts as failed after
//!   `cool_down`, so a lost trial cannot hold the breaker half-open.
//!
//! Each server process keeps its own breakers (nothing is shared through the
//! database): two processes may judge one creditor differently for a
//! cool-down at most. A `429` backs off at once, whatever the count.

use std::time::{Duration, Instant};

/// The breaker's settings, the same for every creditor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open a closed breaker.
    pub failure_threshold: u32,
    /// How long an opened breaker stays open before its trial call.
    pub cool_down: Duration,
    /// The longest back-off a `Retry-After` may ask for.
    pub max_back_off: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(1),
            max_back_off: Duration::from_secs(60),
        }
    }
}

/// The breaker's state, as `/metrics` and `creditor list` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// What the breaker lets one lookup do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call the creditor (closed breaker).
    Call,
    /// Call the creditor as the trial of a half-open breaker; record the
    /// outcome whatever it is.
    Trial,
    /// Do not call: the breaker is open (or its trial is in flight).
    Rejected,
}

impl Admission {
    pub fn calls(self) -> bool {
        !matches!(self, Self::Rejected)
    }
}

/// How a call that was made ended, as far as the breaker cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    Success,
    Failure,
    /// `429 Too Many Requests`, with its `Retry-After` if it had one.
    Throttled(Option<Duration>),
}

/// A change of state, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_since: Option<Instant> },
}

/// One creditor's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    inner: Inner,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            inner: Inner::Closed { failures: 0 },
        }
    }

    /// The state at `now` (an open breaker whose time has passed is
    /// half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a lookup at `now` may call the creditor; a trial admission
    /// marks the trial in flight. The transition, if the state changed
    /// (open → half-open).
    pub fn admit(&mut self, now: Instant) -> (Admission, Option<Transition>) {
        let before = self.state(now);
        let admission = match self.inner {
            Inner::Closed { .. } => Admission::Call,
            Inner::Open { until } if now < until => Admission::Rejected,
            Inner::Open { .. } => {
                self.inner = Inner::HalfOpen {
                    trial_since: Some(now),
                };
                Admission::Trial
            }
            Inner::HalfOpen {
                trial_since: Some(since),
            } if now.saturating_duration_since(since) < self.policy.cool_down => {
                Admission::Rejected
            }
            Inner::HalfOpen { .. } => {
                self.inner = Inner::HalfOpen {
                    trial_since: Some(now),
                };
                Admission::Trial
            }
        };
        (admission, self.transition(before, now))
    }

    /// Records the outcome of a call admitted at `admission`, ended at
    /// `now`; the transition, if the state changed.
    pub fn record(
        &mut self,
        admission: Admission,
        result: CallResult,
        now: Instant,
    ) -> Option<Transition> {
        let before = self.state(now);
        match (result, self.inner) {
            (CallResult::Throttled(retry_after), _) => {
                let back_off = retry_after
                    .unwrap_or(self.policy.cool_down)
                    .min(self.policy.max_back_off);
                self.inner = Inner::Open {
                    until: now + back_off,
                };
            }
            // A call admitted while closed that ends after the breaker
            // opened (its concurrent calls failed first) changes nothing.
            (_, Inner::Open { .. }) => {}
            (CallResult::Success, Inner::HalfOpen { .. }) if admission != Admission::Trial => {}
            (CallResult::Success, _) => self.inner = Inner::Closed { failures: 0 },
            (CallResult::Failure, Inner::Closed { failures }) => {
                let failures = failures.saturating_add(1);
                self.inner = if failures >= self.policy.failure_threshold {
                    Inner::Open {
                        until: now + self.policy.cool_down,
                    }
                } else {
                    Inner::Closed { failures }
                };
            }
            (CallResult::Failure, Inner::HalfOpen { .. }) => {
                if admission == Admission::Trial {
                    self.inner = Inner::Open {
                        until: now + self.policy.cool_down,
                    };
                }
            }
        }
        self.transition(before, now)
    }

    fn transition(&self, from: BreakerState, now: Instant) -> Option<Transition> {
        let to = self.state(now);
        (from != to).then_some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failure_threshold: 3,
            cool_down: COOL,
            max_back_off: Duration::from_secs(30),
        })
    }

    fn fail(b: &mut Breaker, now: Instant) -> Option<Transition> {
        let (admission, _) = b.admit(now);
        assert!(admission.calls());
        b.record(admission, CallResult::Failure, now)
    }

    fn open(now: Instant) -> Breaker {
        let mut b = breaker();
        for _ in 0..3 {
            fail(&mut b, now);
        }
        assert_eq!(b.state(now), BreakerState::Open);
        b
    }

    #[test]
    fn a_closed_breaker_opens_after_the_threshold_of_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = breaker();
        assert_eq!(fail(&mut b, t0), None);
        assert_eq!(fail(&mut b, t0), None);
        assert_eq!(b.state(t0), BreakerState::Closed);
        assert_eq!(
            fail(&mut b, t0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.admit(t0).0, Admission::Rejected);
        assert_eq!(b.admit(t0 + COOL / 2).0, Admission::Rejected);
    }

    #[test]
    fn a_success_resets_the_count_of_failures() {
        let t0 = Instant::now();
        let mut b = breaker();
        fail(&mut b, t0);
        fail(&mut b, t0);
        let (a, _) = b.admit(t0);
        assert_eq!(b.record(a, CallResult::Success, t0), None);
        fail(&mut b, t0);
        fail(&mut b, t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn after_the_cool_down_one_trial_is_admitted_and_the_others_fall_back() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let later = t0 + COOL;
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        let (trial, transition) = b.admit(later);
        assert_eq!(trial, Admission::Trial);
        // Open → half-open was already visible through state(); admit
        // reports no change of the visible state.
        assert_eq!(transition, None);
        assert_eq!(b.admit(later).0, Admission::Rejected);
        assert_eq!(
            b.record(trial, CallResult::Success, later),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert_eq!(b.admit(later).0, Admission::Call);
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_for_another_cool_down() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let later = t0 + COOL;
        let (trial, _) = b.admit(later);
        assert_eq!(
            b.record(trial, CallResult::Failure, later),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.admit(later + COOL / 2).0, Admission::Rejected);
        assert_eq!(b.admit(later + COOL).0, Admission::Trial);
    }

    #[test]
    fn a_trial_whose_outcome_is_lost_is_replaced_after_a_cool_down() {
        let t0 = Instant::now();
        let mut b = open(t0);
        let (trial, _) = b.admit(t0 + COOL);
        assert_eq!(trial, Admission::Trial);
        assert_eq!(b.admit(t0 + COOL + COOL / 2).0, Admission::Rejected);
        assert_eq!(b.admit(t0 + COOL * 2).0, Admission::Trial);
    }

    #[test]
    fn late_outcomes_of_ordinary_calls_do_not_decide_a_half_open_breaker() {
        let t0 = Instant::now();
        let mut b = breaker();
        let (early, _) = b.admit(t0);
        for _ in 0..3 {
            fail(&mut b, t0);
        }
        // A call admitted while closed ends while open: nothing changes.
        assert_eq!(b.record(early, CallResult::Success, t0), None);
        assert_eq!(b.state(t0), BreakerState::Open);
        let later = t0 + COOL;
        let (trial, _) = b.admit(later);
        assert_eq!(b.record(early, CallResult::Success, later), None);
        assert_eq!(b.record(early, CallResult::Failure, later), None);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.record(trial, CallResult::Success, later);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_429_backs_off_for_its_retry_after_at_once() {
        let t0 = Instant::now();
        let mut b = breaker();
        let (a, _) = b.admit(t0);
        assert_eq!(
            b.record(a, CallResult::Throttled(Some(Duration::from_secs(3))), t0),
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.admit(t0 + Duration::from_secs(2)).0, Admission::Rejected);
        assert_eq!(b.admit(t0 + Duration::from_secs(3)).0, Admission::Trial);
    }

    #[test]
    fn a_429_without_retry_after_backs_off_a_cool_down_and_a_long_one_is_capped() {
        let t0 = Instant::now();
        let mut b = breaker();
        let (a, _) = b.admit(t0);
        b.record(a, CallResult::Throttled(None), t0);
        assert_eq!(b.admit(t0 + COOL / 2).0, Admission::Rejected);
        assert_eq!(b.admit(t0 + COOL).0, Admission::Trial);

        let mut b = breaker();
        let (a, _) = b.admit(t0);
        b.record(
            a,
            CallResult::Throttled(Some(Duration::from_secs(3600))),
            t0,
        );
        assert_eq!(b.admit(t0 + Duration::from_secs(29)).0, Admission::Rejected);
        assert_eq!(b.admit(t0 + Duration::from_secs(30)).0, Admission::Trial);
    }

    #[test]
    fn the_gauge_values_are_distinct() {
        assert_eq!(BreakerState::Closed.gauge(), 0);
        assert_eq!(BreakerState::Open.gauge(), 1);
        assert_eq!(BreakerState::HalfOpen.gauge(), 2);
        assert_eq!(BreakerState::HalfOpen.as_str(), "half-open");
    }
}
